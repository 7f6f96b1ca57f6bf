"""HTTP adapters: JSON endpoints for logins, the console and health."""
