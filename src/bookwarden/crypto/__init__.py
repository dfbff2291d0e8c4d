"""Key hierarchy (master -> tenant -> subject), field encryption, blind indexes, shredding."""
