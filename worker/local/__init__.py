"""`sensormail local`: an AWS emulator, the resources, an SMTP stand-in for SES inbound, and the worker."""
