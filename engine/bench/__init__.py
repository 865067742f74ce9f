"""`copyspec bench`: CopySpec against greedy decoding and HF prompt lookup, identity first."""
