"""What must survive a crash: the label ledger and the run directory."""
