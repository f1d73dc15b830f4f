"""Pure, Ray-free image/video math used by the CPU backends (and testable on its own).

Conventions: frames uint8 RGB ``(T, H, W, 3)``, masks/alpha uint8 ``(T, H, W)`` in 0..255.
"""
