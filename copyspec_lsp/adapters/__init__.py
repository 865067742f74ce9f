"""Layer 4 (bottom), the adapters: text and line index, open documents, region tracking,
streamed edits, syntax, the client port and the model host with its engine thread. Imports
no other layer of the server."""
