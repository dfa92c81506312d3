"""The capacity search (`bench capacity`): measured steps of the core at rising, then bisected rates."""
