"""One Ray Data stage per module. Each is a callable class: ``__init__`` builds its backend once per
actor, ``__call__(batch) -> batch`` processes clip rows (see :mod:`dataset_builder.stages.base`)."""
