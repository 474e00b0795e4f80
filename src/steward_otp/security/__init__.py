"""Security: signing keys, message signatures and their verification, the trust store, ACLs.

* :mod:`~steward_otp.security.signing` -- pure: canonical bytes of a message, sign, check.
* :mod:`~steward_otp.security.keyfiles` -- the node's key pair in ``<home>/etc/signing/``.
* :mod:`~steward_otp.security.trust` -- allowed and pending keys (``keys.json``).
* :mod:`~steward_otp.security.verify` -- the verify hooks the Subscribers run.
* :mod:`~steward_otp.security.outbox` -- the outbox that signs what the node sends.
* :mod:`~steward_otp.security.service` -- all of it for one node (``Node.security``).
* :mod:`~steward_otp.security.nkey` -- a NATS nkey derived from an OpenSSH ed25519 key.
* :mod:`~steward_otp.security.keys_cli` -- the ``keys`` command (show, ls, allow, add, delete).
* :mod:`~steward_otp.security.acl` -- pure: the names of ACL rules, a node's ACL, the decision.
* :mod:`~steward_otp.security.central_acl` -- pure: central's editable rules and groups.
* :mod:`~steward_otp.security.acl_store` -- the ACL files in ``<home>/etc/acl/``.
* :mod:`~steward_otp.security.acl_service` -- a node's ACLs: the check hook, central's store,
  the update timer (``Node.security.acl``).

See docs/security.md for what is built and what is not yet.
"""
