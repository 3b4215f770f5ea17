"""Report files: the layouts the regulations prescribe, drawn with XlsxWriter."""
