"""Document bytes at rest: encrypted local files, or S3 with SSE-KMS."""
