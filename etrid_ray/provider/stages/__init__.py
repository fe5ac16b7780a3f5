"""The head's stages, in the order a job meets them: intake → admission → claim → dispatch → harvest →
settle, with keepalive beside them and recovery before them. Each is a small class that gets what it needs
passed in (the job book, a chain port, a task port, the clock) and moves jobs only through the book."""
