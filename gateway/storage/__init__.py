"""Durable storage of appeals, their history, deliveries, poller cursors and the audit log."""
