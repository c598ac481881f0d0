"""HTTP to Microsoft: Entra ID sign-in (msal), the Defender per-IP endpoint, Graph advanced hunting."""
