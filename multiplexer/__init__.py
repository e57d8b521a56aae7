"""twinbill multiplexer."""
