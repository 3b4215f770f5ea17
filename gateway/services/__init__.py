"""Application services: the use cases the API and the CLI call, one module a use case."""
