"""Tool calls: telling the model about tools, constraining and parsing the calls it writes."""
