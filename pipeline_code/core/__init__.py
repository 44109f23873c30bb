"""Engine-free processing core: pure functions over records."""
