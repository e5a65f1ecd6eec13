"""POST /tokenize and /detokenize, in llama.cpp's server's shape."""
