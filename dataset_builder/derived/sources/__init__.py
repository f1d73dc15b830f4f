"""Readers for the external sources of LayerFlow's stage-2/3 data (see README "Derived datasets"):

* :mod:`.video_matting`  (foreground video, alpha video) pairs: VideoMatte240K ``fgr/`` + ``pha/``,
  generic ``fg/`` + ``alpha/`` folders or ``<id>_fg`` / ``<id>_alpha`` siblings (videos or frame folders);
* :mod:`.image_matting`  image-matting sets: ``image/`` + ``alpha/`` (AM-2k ``original/`` + ``mask/``,
  P3M ``blurred_image/`` + ``mask/``) and ``fg/`` + ``alpha/`` [+ ``bg/``] (Distinctions-646 ``FG/`` + ``GT/``);
* :mod:`.mulan`          the official MuLAn annotation pickles over COCO / LAION base images;
* :mod:`.coarse_qa`      coarse-set samples, kept only when their QA scores pass precision-first thresholds.

Readers are pure (no Ray): discovery returns entries plus :class:`Problem` records for malformed
entries, and loaders raise :class:`SourceError` carrying a reject reason, so every bad entry ends as a
reject with a reason instead of a lost input or a crashed run.
"""
