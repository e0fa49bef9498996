"""Google Cloud adapters: Firestore (store), Cloud Tasks (scheduler), OIDC (step auth).

Google libraries are imported only from these modules, and only when the composition root
chooses this backend."""
