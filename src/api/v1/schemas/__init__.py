"""Request and response models of the v1 API; responses never carry secrets such as password hashes."""
