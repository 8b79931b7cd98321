"""Data: schema, readers, the synthetic world, splits and sample builders."""
