"""The domain: appeals, routes, deadlines, statuses.

Nothing in this package imports an adapter, a web framework or the database layer;
everything outside talks to it through the interfaces in `ports`.
"""
