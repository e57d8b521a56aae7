"""twinbill admin."""
