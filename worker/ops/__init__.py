"""Operator commands: queue status and redrive, link revocation, the kill switch, device SMTP credentials."""
