"""CPU backends: classical computer vision, no weights, meaningful output on real video.

Each backend takes a :class:`~dataset_builder.config.BackendSpec` and validates ``spec.options``
against its own pydantic options model (unknown keys are errors, defaults are documented there).
"""
