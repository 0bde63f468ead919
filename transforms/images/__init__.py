"""Image bytes: what format, how big, whether whole, and the bytes that go into a record (pure)."""
