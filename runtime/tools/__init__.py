"""Tool calls: how a request with tools becomes a prompt, a grammar and a reply parser."""
