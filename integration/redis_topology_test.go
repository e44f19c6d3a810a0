package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// clusterTables are the two version tables of TestRedisClusterTwoNodesNoLostUpdate:
// a path, its key_prefix and the hash tag `store redis` gives its keys
// ({key_prefix + version source}). The prefixes were picked so that the
// tags land on different masters of a 3-master cluster; the test checks it.
var clusterTables = []struct{ path, prefix, tag string }{
	{"/counters/", "caddy-conflict:", "{caddy-conflict:etag}"}, // slot 918, on the first
	{"/tallies/", "shop:", "{shop:etag}"},                      // slot 9943, on the second master
}

// clusterIncrement runs n read-modify-write increments of path through the
// node at baseURL, retrying each on 409 with a fresh GET.
func clusterIncrement(t *testing.T, client *http.Client, baseURL, path string, n int) (conflicts int) {
	for done := 0; done < n; {
		g := do(t, client, http.MethodGet, baseURL+path, nil, lbHost)
		if g.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, g.status, g.body)
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(g.body, &doc); err != nil {
			t.Errorf("GET %s body: %v", path, err)
			return
		}
		value, _ := doc["value"].(float64)
		doc["value"] = int(value) + 1
		p := do(t, client, http.MethodPut, baseURL+path, doc, lbHost, "If-Match: "+g.header.Get("ETag"))
		switch p.status {
		case http.StatusOK, http.StatusNoContent:
			done++
		case http.StatusConflict:
			conflicts++
		default:
			t.Errorf("PUT %s: unexpected %d %s", path, p.status, p.body)
			return
		}
	}
	return conflicts
}

// TestRedisClusterTwoNodesNoLostUpdate: two Caddy nodes share version
// tables in a Redis Cluster of three masters, in front of one legacy
// upstream (it ignores preconditions). Clients on both nodes increment
// three counters in each of two tables, whose keys live in two different
// hash slots on two different masters: no increment is lost.
func TestRedisClusterTwoNodesNoLostUpdate(t *testing.T) {
	c := backends.StartRedisCluster(t)
	admin := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.Addrs(), Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer admin.Close()
	ctx := context.Background()

	// Which slot, and which master, each table's keys belong to.
	slots := map[int64]string{}
	masters := map[string]bool{}
	ranges, err := admin.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range clusterTables {
		slot, err := admin.ClusterKeySlot(ctx, tb.tag+":api.test"+tb.path+"1").Result()
		if err != nil {
			t.Fatal(err)
		}
		if s2, _ := admin.ClusterKeySlot(ctx, tb.tag).Result(); s2 != slot {
			t.Fatalf("%s: a key's slot %d is not its tag's %d", tb.path, slot, s2)
		}
		for _, r := range ranges {
			if int64(r.Start) <= slot && slot <= int64(r.End) {
				masters[r.Nodes[0].Addr] = true
			}
		}
		slots[slot] = tb.path
	}
	if len(slots) != 2 || len(masters) != 2 {
		t.Fatalf("the tables share a slot or a master: slots %v, masters %v", slots, masters)
	}
	t.Logf("table slots %v on masters %v", slots, masters)

	seed := map[string][]map[string]any{}
	for _, tb := range clusterTables {
		coll := strings.Trim(tb.path, "/")
		for id := 1; id <= 3; id++ {
			seed[coll] = append(seed[coll], map[string]any{"id": id, "value": 0})
		}
	}
	up := startLegacy(t, seed)
	var site strings.Builder
	for _, tb := range clusterTables {
		fmt.Fprintf(&site, `	route %s* {
		conflict {
			store redis {
				address %s
				cluster
				key_prefix %s
			}
		}
		reverse_proxy %s
	}
`, tb.path, strings.Join(c.Addrs(), " "), tb.prefix, up)
	}
	nodes := []*node{startNode(t, site.String()), startNode(t, site.String())}

	const clients, perClient = 24, 25
	paths := []string{}
	for _, tb := range clusterTables {
		for id := 1; id <= 3; id++ {
			paths = append(paths, tb.path+strconv.Itoa(id))
		}
	}
	client := counterClient(false)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	want := map[string]int{}
	for i := range clients {
		n, path := nodes[i%len(nodes)], paths[(i/len(nodes))%len(paths)]
		want[path] += perClient
		wg.Go(func() {
			c := clusterIncrement(t, client, n.url, path, perClient)
			mu.Lock()
			conflicts += c
			mu.Unlock()
		})
	}
	wg.Wait()
	total := 0
	for _, path := range paths {
		g := do(t, client, http.MethodGet, nodes[1].url+path, nil, lbHost)
		var doc struct{ Value int }
		if err := json.Unmarshal(g.body, &doc); err != nil {
			t.Fatalf("final GET %s: %v %s", path, err, g.body)
		}
		if doc.Value != want[path] {
			t.Errorf("%s = %d, want %d: updates were lost across nodes", path, doc.Value, want[path])
		}
		total += doc.Value
	}
	t.Logf("two nodes, a 3-master cluster, 6 keys in 2 tables: %d increments in %s, %d conflicts answered with 409",
		total, time.Since(start).Round(time.Millisecond), conflicts)

	// The tables' keys are where their tags say: each key of a table in
	// the table's slot, and both tables present.
	found := map[string]int{}
	err = admin.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		it := m.Scan(ctx, 0, "*", 1000).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			slot, err := admin.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				return err
			}
			path, ok := slots[slot]
			if !ok {
				return fmt.Errorf("key %q in slot %d, no table's", k, slot)
			}
			mu.Lock()
			found[path]++
			mu.Unlock()
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range clusterTables {
		if found[tb.path] < 3 {
			t.Errorf("table %s: %d keys in Redis, want its 3 keys and its index at least", tb.path, found[tb.path])
		}
	}
}
