"""boto3: the client factory, the SQS/SNS event sinks and the inbound queue."""
