"""The SQS loop: receive, heartbeat, settle, drain."""
