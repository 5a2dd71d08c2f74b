"""Pure email handling: raw bytes in, parsed parts, recipients and the outgoing email out; no I/O."""
