"""One AWS concern a module: clients, attachment links and their signer, sending, the progress ledger."""
