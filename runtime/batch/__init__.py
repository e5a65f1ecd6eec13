"""The Batch API's runtime: a durable store of files, batches and lines, and the runner."""
