"""The split names every dataset of kdjax uses. A system's evaluation calls 'validation' its 'dev' split."""

SPLITS = ("train", "validation", "test")
