"""Secret references: where the backend reads a secret, never the secret itself.

The class is the serving layer's (:class:`yoi_runtime.serving.SecretRef`),
shared with ``yoi-runtime --token-file``; the workspace re-exports it as
``yoi_workspace.SecretRef``.
"""

from yoi_runtime.serving import SecretRef as SecretRef

__all__ = ["SecretRef"]
