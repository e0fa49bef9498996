"""The run store on Google Cloud Firestore."""

from refluxo.backends.gcp.firestore.layout import HeadRevision
from refluxo.backends.gcp.firestore.store import FirestoreStore

__all__ = ["FirestoreStore", "HeadRevision"]
