"""The ATNL service: FastAPI app, RQ training jobs, model store, settings."""
