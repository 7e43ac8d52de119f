//! podgrant-sim: a simulated Kubernetes API server that speaks the real wire protocol and misbehaves on purpose.
