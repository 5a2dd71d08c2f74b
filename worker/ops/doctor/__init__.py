"""`sensormail doctor`: the deployment's troubleshooting guide, run against the live system."""
