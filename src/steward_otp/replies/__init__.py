"""Send and wait: following the replies to messages a node sent, for the control socket's
``replies`` operation (behind ``steward-otp cmd``, ``steward-otp send --wait`` and the web
view's send page).

Flow: a reply comes back to the sending node as an ordinary message; once its handler has
run, the store has audited it and the node's :class:`~steward_otp.replies.hub.ReplyHub`
hands it to whoever waits for the id it answers; so does each outcome (delivered, failed,
cancelled, purged) of a sent message once it is committed. One module per part:

* :mod:`~steward_otp.replies.hub` -- who waits for which ids: the in-memory publish/subscribe
  the node's store and Subscribers tell, never blocking them;
* :mod:`~steward_otp.replies.follow` -- :func:`~steward_otp.replies.follow.follow`: the audit
  log read once, then the hub's news, as a stream of events ending with each id's final
  state;
* :mod:`~steward_otp.replies.watch` -- what one watch knows about its ids: each reply and
  each outcome reported once, and when an id is settled;
* :mod:`~steward_otp.replies.send_plan` -- what ``send`` and ``cmd`` hand to a node and how
  their outcome reads (the summary line and the exit status), shared by the command line
  and the web view without loading either.

Importing this package loads nothing: the command line imports ``send_plan`` without trio.
"""
