"""Detection methods: ViLD (and its region cache builder)."""
