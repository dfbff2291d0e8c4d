"""The audit trail: every access-control activity and every touch of customer data, append-only,
hash-chained per tenant, sealed in signed Merkle checkpoints, verifiable offline."""
