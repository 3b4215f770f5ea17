"""The phone exchange: its call detail records (CDR) as the gateway reads them."""
