"""A small Redis client of our own on trio: the RESP2 codec (`resp`), URLs, TLS and streams
(`connect`), and the pooled, fail-fast client the stores use (`client`). The audit sink, the
session store and the KV store all build on it."""
