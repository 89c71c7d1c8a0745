"""The rules about documents, with no I/O and no Trio: plain synchronous Python."""
