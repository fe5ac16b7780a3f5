"""The provider head: watch the chain queue, admit, claim, dispatch to Ray, report, recover."""
