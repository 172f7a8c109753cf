"""The service's routers, one per resource (API) plus the reviewer pages and the docs."""
