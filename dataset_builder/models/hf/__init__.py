"""GPU model backends of the ``paper`` profile (transformers / pytorchcv). Weights load only from
local directories (see ``loading`` and docs/models.md); every heavy import happens inside the
backend constructors: importing this package or its modules (except ``deform_conv``) needs neither
torch nor torchvision."""
