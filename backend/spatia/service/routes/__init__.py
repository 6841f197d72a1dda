"""The /v1 routes, one module per area of docs/http-api.md."""
