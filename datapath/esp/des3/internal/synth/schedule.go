package main

// schedule returns the gates (signal indices) in the order the code should compute them:
// greedy list scheduling that, among the gates whose operands are ready, picks the one
// that ends the life of most operands (the earliest among equals). Fewer values live at
// once means fewer spills: amd64 has 16 registers, and an S-box keeps 6 inputs, 4
// outputs and its temporaries. Go's compiler keeps much of the source order.
func schedule(c *circuit, outs []lit) []int {
	first := len(inputTT)
	uses := make([]int, len(c.g)) // readers not yet scheduled; outputs count as one more
	for _, g := range c.g[first:] {
		uses[g.a]++
		uses[g.b]++
	}
	for _, o := range outs {
		uses[o.signal()]++
	}
	done := make([]bool, len(c.g))
	for i := range first {
		done[i] = true
	}
	var order []int
	for len(order) < len(c.g)-first {
		best, bestKills := -1, -1
		for i := first; i < len(c.g); i++ {
			g := c.g[i]
			if done[i] || !done[g.a] || !done[g.b] {
				continue
			}
			kills := 0
			if uses[g.a] == 1 {
				kills++
			}
			if uses[g.b] == 1 && g.b != g.a {
				kills++
			}
			if kills > bestKills {
				best, bestKills = i, kills
			}
		}
		done[best] = true
		uses[c.g[best].a]--
		uses[c.g[best].b]--
		order = append(order, best)
	}
	return order
}
