"""Cloud Functions entry points (placeholder until the deployment is wired)."""
