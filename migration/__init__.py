"""twinbill migration."""
