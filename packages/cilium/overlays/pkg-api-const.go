// SPDX-License-Identifier: Apache-2.0
// Copyright Authors of Cilium

package api

import (
	"os"
	"time"
)

const (
	// CiliumGroupName is the cilium's unix group name.
	CiliumGroupName = "cilium"
	// SocketFileMode is the default file mode for the sockets.
	SocketFileMode os.FileMode = 0660
	// ClientTimeout specifies timeout to be used by clients
	//
	// Basalt: 90 s upstream. cilium-cni's endpoint create waits, under this
	// bound, for the agent to compile the pods' BPF program on the node on
	// the first pod, which takes longer than 90 s on a slow (for example,
	// emulated) machine; on timeout the compile is cancelled and the next
	// attempt starts over. 30 min, as the agent's EndpointGenerationTimeout
	// (also raised): the kubelet's sandbox timeout is the one bound.
	ClientTimeout = 30 * time.Minute
)
