"""skilltag: tag job ads with ESCO skills (Decorte et al. 2023, extended)."""

__version__ = "0.1.0"
